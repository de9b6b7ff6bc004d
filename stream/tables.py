"""The per-user state table: RocksDB through rocksdict, backed by a changelog topic."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import ProfilestreamApp

__all__ = ["declare", "STATE_TABLE"]

STATE_TABLE = "user-state"


def declare(app: "ProfilestreamApp") -> None:
    # Raw bytes in and out: the value is model.state's versioned packing, not a Faust codec,
    # so a format change is detected instead of mis-decoded.
    app.state_table = app.Table(
        STATE_TABLE,
        key_type=bytes,
        value_type=bytes,
        partitions=app.ps_settings.partitions,
        store="rocksdb://",
        help="per-user LSTM state, counters, recent items, last applied source position",
    )
    table = app.state_table
    send_changelog = table.send_changelog

    def tracked_send_changelog(*args: Any, **kwargs: Any) -> Any:
        # Every state write and delete goes through here (Faust's Table._send_changelog); the
        # consumer commits no offset before these records are on the broker (output.ChangelogWatch).
        fut = send_changelog(*args, **kwargs)
        app.changelog.track(fut)
        return fut

    table.send_changelog = tracked_send_changelog
