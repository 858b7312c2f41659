"""The sandbox stays on this machine: its page and the bot behind it listen on 127.0.0.1 only, and the page
refuses to be driven under another name."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import requests

from tests.e2e.listening import listening_addresses


def test_the_page_and_the_bot_listen_on_loopback_only(sandbox):
    page_port = urlsplit(sandbox.url).port
    assert listening_addresses(page_port) == {"127.0.0.1"}
    log = (sandbox.workdir / "run" / "bot.log").read_text(errors="replace")
    found = re.search(r"modelbot listening on (\S+):(\d+)", log)
    assert found, "the bot's log does not say where it listens:\n" + log[-2000:]
    assert found.group(1) == "127.0.0.1"
    assert listening_addresses(int(found.group(2))) == {"127.0.0.1"}


def test_the_page_refuses_another_host_name(sandbox):
    answer = requests.get(sandbox.url + "api/state", headers={"Host": f"rebound.example:{urlsplit(sandbox.url).port}"},
                          timeout=10)
    assert answer.status_code == 403 and "rebound.example" in answer.json()["error"]
