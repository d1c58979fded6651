"""Audit sink formats: JSON line, CEF (escaping), RFC 5424 syslog, octet counting; sink config."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from keyturn.audit.sinks.base import AuditEvent
from keyturn.audit.sinks.formats import render_cef, render_jsonl, severity
from keyturn.audit.sinks.syslog import frame_octet_counting, render_5424
from keyturn.config import AuditSinkConfig
from keyturn.errors import ConfigError

H = "ab" * 32
P = "0" * 64


def event(**kw: object) -> AuditEvent:
    base: dict[str, object] = {
        "id": 7, "ts": datetime(2025, 1, 31, 8, 0, 0, 123456, tzinfo=UTC), "actor": "cli:ann",
        "action": "rotation.audit", "record_uid": "Rec0000000000000000001",
        "details": {"outcome": "rolled_back", "reason": "a|b=c\\d\nx", "rotation_id": "r1"},
        "prev_hash": P, "hash": H,
    }
    base.update(kw)
    return AuditEvent(**base)  # type: ignore[arg-type]


def test_jsonl_golden() -> None:
    line = render_jsonl(event())
    assert line == (
        '{"action":"rotation.audit","actor":"cli:ann","details":{"outcome":"rolled_back",'
        '"reason":"a|b=c\\\\d\\nx","rotation_id":"r1"},"hash":"' + H + '","id":7,"prev_hash":"' + P + '",'
        '"record_uid":"Rec0000000000000000001","ts":"2025-01-31T08:00:00.123456+00:00"}'
    )
    assert "\n" not in line
    assert json.loads(line)["details"]["reason"] == "a|b=c\\d\nx"


def test_cef_golden_escapes_extension_values() -> None:
    assert render_cef(event()) == (
        "CEF:0|keyturn|keyturn|0.1.0|rotation.audit|Rotation finished|7|"
        "rt=1738310400123 externalId=7 suser=cli:ann act=rotation.audit outcome=rolled_back "
        "cs1Label=record cs1=Rec0000000000000000001 cs2Label=hash cs2=" + H + " cs3Label=prev_hash cs3=" + P +
        ' cs4Label=details cs4={"outcome":"rolled_back","reason":"a|b\\=c\\\\\\\\d\\\\nx","rotation_id":"r1"}'
    )


def test_cef_header_escapes_pipe_and_backslash_and_values_escape_equals() -> None:
    line = render_cef(event(action="odd|act\\ion", actor="a=b\\c\r\nd", record_uid=None, details={}))
    assert line.startswith("CEF:0|keyturn|keyturn|0.1.0|odd\\|act\\\\ion|odd\\|act\\\\ion|3|")
    assert " suser=a\\=b\\\\c\\nd act=odd|act\\\\ion cs2Label=hash" in line
    assert "cs1" not in line  # no record → no record field
    assert "\n" not in line and "\r" not in line


def test_severity_follows_outcome_and_action() -> None:
    assert severity(event()).syslog == 4
    assert severity(event(details={"outcome": "needs_attention"})).cef == 9
    assert severity(event(details={"outcome": "rotated"})).syslog == 6
    assert severity(event(action="reveal", details={})).syslog == 5
    assert severity(event(action="rotation.apply", details={"status": "failed"})).syslog == 4
    assert severity(event(action="something.new", details={})).syslog == 6


def test_rfc5424_golden_with_structured_data() -> None:
    msg = render_5424(event(), fmt="jsonl", facility=10, hostname="kt1", procid="4242")
    sd = f'[keyturn@32473 id="7" record="Rec0000000000000000001" hash="{H}"]'
    # PRI = authpriv(10) * 8 + warning(4) = 84
    assert msg == f"<84>1 2025-01-31T08:00:00.123456Z kt1 keyturn 4242 rotation.audit {sd} " + \
        render_jsonl(event())


def test_rfc5424_escapes_sd_values_and_sanitises_header_tokens() -> None:
    e = event(record_uid='x"y]z\\', action="a b" + "c" * 40, details={})
    msg = render_5424(e, fmt="cef", facility=1, hostname="my host", procid="1")
    assert msg.startswith("<14>1 2025-01-31T08:00:00.123456Z my_host keyturn 1 a_b" + "c" * 29 + " ")
    assert 'record="x\\"y\\]z\\\\"' in msg
    assert msg.split("] ", 1)[1].startswith("CEF:0|keyturn|")


def test_octet_counting_counts_bytes_not_characters() -> None:
    assert frame_octet_counting("é".encode()) == b"2 \xc3\xa9"


def test_sink_config_requires_fields_and_https() -> None:
    with pytest.raises(ValueError, match="a webhook sink needs url, hmac_record"):
        AuditSinkConfig(name="w", type="webhook")
    with pytest.raises(ValueError, match="must be https"):
        AuditSinkConfig(name="w", type="webhook", url="http://siem.example/in", hmac_record="key")
    with pytest.raises(ValueError, match="Extra inputs"):
        AuditSinkConfig.model_validate({"name": "w", "type": "jsonl", "path": "/x", "hmac_key": "s3cret"})
    cfg = AuditSinkConfig(name="s", type="syslog", host="127.0.0.1")
    assert (cfg.protocol, cfg.port, cfg.format) == ("tls", None, "jsonl")


def test_settings_read_sinks_from_toml(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from keyturn.config import load_settings

    (tmp_path / "keyturn.toml").write_text(
        '[[keyturn.audit_sinks]]\nname = "siem"\ntype = "syslog"\nhost = "127.0.0.1"\nprotocol = "udp"\n'
        '[[keyturn.audit_sinks]]\nname = "file"\ntype = "jsonl"\npath = "audit.jsonl"\nformat = "cef"\n'
    )
    s = load_settings(home=tmp_path)
    assert [(c.name, c.type) for c in s.audit_sinks] == [("siem", "syslog"), ("file", "jsonl")]
    (tmp_path / "keyturn.toml").write_text(
        '[[keyturn.audit_sinks]]\nname = "w"\ntype = "webhook"\nurl = "https://x"\nhmac_record = "k"\n'
        'hmac_secret = "hunter2"\n'
    )
    with pytest.raises(ConfigError) as err:
        load_settings(home=tmp_path)
    assert "hunter2" not in str(err.value)
    assert "audit_sinks.0.hmac_secret" in str(err.value)
