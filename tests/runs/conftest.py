from __future__ import annotations

import pytest



@pytest.fixture
def services(make_services):
    return make_services()
