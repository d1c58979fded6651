"""Every control on the console's own pages has a label a screen reader announces (a <label for>, an
aria-label, or a wrapping <label>), ids are unique, the page has one <h1>, a skip link to <main>, a
language, and no inline script or style — checked on the rendered HTML of each page for an operator."""

from __future__ import annotations

from html.parser import HTMLParser

from tests.console.console_world import console_client, signin
from tests.unit.api_world import Api


class Controls(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.label_for: set[str] = set()
        self.controls: list[dict[str, str | None]] = []
        self.in_label = 0
        self.h1 = 0
        self.skip = False
        self.inline: list[str] = []
        self.lang = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.append(str(a["id"]))
        if "style" in a or any(k.startswith("on") for k in a):
            self.inline.append(tag)
        if tag == "html":
            self.lang = a.get("lang")
        elif tag == "label":
            self.in_label += 1
            if a.get("for"):
                self.label_for.add(str(a["for"]))
        elif tag == "h1":
            self.h1 += 1
        elif tag == "a" and a.get("href") == "#main" and "skip-link" in (a.get("class") or ""):
            self.skip = True
        elif tag == "script" and not a.get("src"):
            self.inline.append("script")
        elif tag in ("input", "select", "textarea") and a.get("type") != "hidden":
            self.controls.append({**a, "_wrapped": "yes" if self.in_label else None})

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self.in_label -= 1


async def test_every_control_is_labelled_on_every_page(api: Api) -> None:
    async with console_client(api) as c:
        pages = {"signin": (await c.get("/console/signin")).text}
        await signin(c, api.tokens["operator"])
        for path in ("/console/", "/console/accounts", "/console/schedules", "/console/profiles",
                     f"/console/profiles/{api.world.user}", "/console/schedules?record=u1&spec="):
            r = await c.get(path)
            assert r.status_code == 200, path
            pages[path] = r.text
    for name, page in pages.items():
        p = Controls()
        p.feed(page)
        assert p.lang == "en" and p.skip and p.h1 == 1, name
        assert not p.inline, (name, p.inline)
        assert len(p.ids) == len(set(p.ids)), (name, sorted(i for i in p.ids if p.ids.count(i) > 1))
        for control in p.controls:
            labelled = control.get("aria-label") or control["_wrapped"] or control.get("id") in p.label_for
            assert labelled, (name, control)
        assert p.controls or name == "/console/", name
