"""The sandbox page as a person uses it, through its accessible roles and names (the page's contract)."""

from __future__ import annotations

import re

from playwright.sync_api import Locator, Page, expect


class Slack:
    def __init__(self, page: Page, url: str):
        self.page = page
        if page.url == "about:blank":
            page.goto(url)

    def open_channel(self, name: str) -> None:
        self.page.get_by_role("button", name=name, exact=True).click()
        expect(self.composer).to_have_accessible_name(f"Message {name}")

    @property
    def composer(self) -> Locator:
        return self.page.get_by_role("textbox", name=re.compile(r"^Message"))

    def send(self, text: str) -> None:
        self.composer.fill(text)
        self.composer.press("Enter")

    @property
    def channel(self) -> Locator:
        return self.page.get_by_role("log", name="Messages")

    @property
    def thread(self) -> Locator:
        return self.page.get_by_role("log", name="Thread messages")

    def message(self, text: str | re.Pattern, where: Locator | None = None) -> Locator:
        return (where or self.channel).locator(".message").filter(has_text=text)

    def open_thread_of(self, text: str | re.Pattern, timeout: float = 60_000) -> None:
        parent = self.message(text).last
        link = parent.get_by_role("button", name=re.compile(r"^\d+ repl(y|ies)$"))
        expect(link).to_be_visible(timeout=timeout)
        link.click()
        expect(self.thread).to_be_visible()
