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
        return self.page.get_by_role("log", name="Messages", exact=True)

    @property
    def thread(self) -> Locator:
        return self.page.get_by_role("log", name="Thread messages", exact=True)

    def message(self, text: str | re.Pattern, where: Locator | None = None) -> Locator:
        return (where or self.channel).locator(".message").filter(has_text=text)

    def open_thread_of(self, text: str | re.Pattern, timeout: float = 60_000) -> None:
        parent = self.message(text).last
        link = parent.get_by_role("button", name=re.compile(r"^\d+ repl(y|ies)$"))
        expect(link).to_be_visible(timeout=timeout)
        link.click()
        expect(self.thread).to_be_visible()

    def retrain(self, model: str, *conf: str, attempts: int = 3) -> None:
        """`/model retrain <model> [key=value ...]` in the current channel, as a person would: sent again when
        modelbot says Airflow did not answer and no run of the model showed up anyway (an overloaded machine's
        Airflow can take longer than modelbot's 10 s to answer a trigger)."""
        runs = self.message(re.compile(rf"{model}\b.* retraining run"))
        refused = self.message(re.compile(rf"`{model}_lifecycle` was not triggered"))
        for _ in range(attempts):
            runs_before, refused_before = runs.count(), refused.count()
            self.send(" ".join(["/model retrain", model, *conf]))
            for _ in range(120):
                if runs.count() > runs_before:
                    return
                if refused.count() > refused_before:
                    break
                self.page.wait_for_timeout(1000)
            # Refused (or nothing at all): the run may still have been created; give the watcher time to show it.
            for _ in range(30):
                if runs.count() > runs_before:
                    return
                self.page.wait_for_timeout(1000)
        raise AssertionError(f"/model retrain {model} did not start a run in {attempts} attempts")

    @property
    def panels(self) -> Locator:
        return self.page.get_by_role("complementary", name="Sandbox panels")

    def served(self, endpoint: str, variant: str) -> Locator:
        """The traffic panel's line of what the variant's own modelbot-serve answered the real sample."""
        return self.page.locator(f'[aria-label="What {endpoint} {variant} served"]')
