"""`pigeonhub bench --url` against a board prints its cycles per frame: the difference of two
/stats readings (src/pigeonhub/bench/board_cycles.py). The firmware side is tested on the emulated
board (test/board/test_frame_cycles.py)."""

from pigeonhub.bench import board_cycles


def reading(offer_hub_count, offer_hub_sum, announce_in=(0, 0)):
    zero = {"count": 0, "sum": 0, "min": 0, "max": 0}
    kinds = {k: {s: dict(zero) for s, _ in board_cycles.STAGES} for k in board_cycles.KINDS}
    kinds["offer"]["hub"] = {"count": offer_hub_count, "sum": offer_hub_sum, "min": 900,
                             "max": 5000}
    kinds["announce"]["transportIn"] = {"count": announce_in[0], "sum": announce_in[1],
                                        "min": 10, "max": 20}
    return {"cpuMHz": 160, **kinds}


def test_only_this_runs_frames_are_averaged():
    before = reading(10, 10_000, announce_in=(2, 30))
    after = reading(110, 210_000, announce_in=(2, 30))
    figures = board_cycles.delta(before, after)
    assert figures == {"offer": {"hub": (100, 2000.0, 900, 5000)}}
    text = board_cycles.table(figures, after)
    assert "| offer | bridge + module | 100 | 2,000 | 12.5 | 900 | 5,000 |" in text
    assert "announce" not in text.split("\n", 1)[1]   # no frames of that kind in this run


def test_stats_url_from_the_hub_url():
    assert board_cycles.stats_url("ws://127.0.0.1:3000") == "http://127.0.0.1:3000/stats"
    assert board_cycles.stats_url("ws://10.0.0.5:3000/?peerId=ab") == "http://10.0.0.5:3000/stats"
    assert board_cycles.stats_url("wss://hub.local/") == "https://hub.local/stats"


def test_a_hub_without_the_figures_gives_none():
    assert board_cycles.read("ws://127.0.0.1:9") is None   # nothing listens on the discard port
