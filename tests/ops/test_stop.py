"""The stop request shared by a run's threads: first request, a second one, the publication gate."""

from __future__ import annotations

import threading
import time

import pytest

from ops.stop import RunStop, RunStopped


def test_the_first_request_sets_reason_and_deadline_a_second_brings_it_forward():
    stop = RunStop()
    assert not stop.requested and stop.remaining_s() == float("inf")
    assert stop.request("SIGTERM", 60.0) is True
    assert stop.requested and 59.0 < stop.remaining_s() <= 60.0
    assert stop.request_info.to_dict()["bound_s"] == 60.0
    assert stop.request("cancelled in Prefect", 15.0) is False  # shorter bound: the deadline moves closer
    assert 14.0 < stop.remaining_s() <= 15.0
    assert stop.request_info.reason == "SIGTERM; cancelled in Prefect" and stop.request_info.bound_s == 15.0
    stop.request("later, longer", 600.0)  # never pushes the deadline back
    assert stop.remaining_s() <= 15.0
    stop.request("second SIGTERM: at once", 60.0, now=True)
    assert stop.remaining_s() == 0.0
    stop.reset()
    assert not stop.requested and stop.in_progress() == []


def test_close_waits_for_an_open_publication_and_refuses_new_ones():
    stop = RunStop()
    stop.request("SIGTERM", 0.0)
    inside, release, finished = threading.Event(), threading.Event(), []

    def publisher():
        with stop.working("SKU-A"), stop.publishing():
            inside.set()
            release.wait(5)
            finished.append("SKU-A")

    t = threading.Thread(target=publisher)
    t.start()
    assert inside.wait(5)
    threading.Timer(0.3, release.set).start()
    t0 = time.monotonic()
    with stop.working("SKU-B"):  # in progress, not publishing: abandoned
        abandoned = stop.close(grace_s=5.0)
    assert time.monotonic() - t0 >= 0.25  # waited for SKU-A's publication to end
    assert finished == ["SKU-A"]
    assert "SKU-B" in abandoned
    t.join(5)
    with pytest.raises(RunStopped, match="stopped before this product was published"), stop.publishing():
        pass


def test_close_gives_up_on_a_publication_after_the_grace():
    stop = RunStop()
    entered, release = threading.Event(), threading.Event()

    def stuck():
        with stop.working("SKU-STUCK"), stop.publishing():
            entered.set()
            release.wait(10)

    t = threading.Thread(target=stuck)
    t.start()
    assert entered.wait(5)
    t0 = time.monotonic()
    assert stop.close(grace_s=0.2) == ["SKU-STUCK"]
    assert 0.15 < time.monotonic() - t0 < 2.0
    release.set()
    t.join(5)
