"""zonewatch/drill.py `Phases`: the wall seconds a drill spent in each step (the stderr line)."""

from zonewatch.drill import Phases


def test_each_step_gets_the_time_since_the_last_mark_and_repeated_steps_add_up():
    phases = Phases()
    phases.at = 100.0
    phases.mark("publishing", 103.0)
    phases.mark("catching up", 110.5)
    phases.mark("publishing", 111.0)   # a step met again adds to its first share
    assert phases.seconds == {"publishing": 3.5, "catching up": 7.5}
    assert phases.line() == "phases (11 s): publishing 3.5 s, catching up 7.5 s"
