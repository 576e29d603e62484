"""Contender "streamproc": our worker end to end (Kafka -> merge -> engine -> ClickHouse).

Runs the real worker (the Faust app with the batch consumer, the deterministic merge, the
exact engine, writes to embedded ClickHouse through chDB, snapshots to Kafka) in this
process with ``--exit-when-idle``, and reports the time from the first record fetched to
the end of the first ClickHouse write that happened after the last record was fetched:
from then on, every event's effect is in the tables. CPU is the process CPU over the
same span (the Faust consumer thread included). Everything is computed: presence,
unique and peak viewers, watch time, dedup, lateness, dead letters — far more than the
counts-and-GMV subset of the other framework contenders.

    python -m bench.contenders.streamproc --bootstrap 127.0.0.1:39092 --topics v,c,k,o \\
        --records 1000000 --group bench-streamproc --partitions 8 --state-dir /tmp/x
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Any

from bench.contenders import parse_args


def main() -> None:
    args = parse_args(__doc__ or "")
    state = args.state_dir or tempfile.mkdtemp(prefix="bench-streamproc-")
    from streamproc import settings as st
    from streamproc import worker

    s = st.load({}).replace(
        kafka_bootstrap=args.bootstrap,
        topics=tuple(args.topics),
        partitions=args.partitions,
        group_id=args.group,
        dead_letter_topic=f"{args.group}.dead_letters",
        snapshot_topic=f"{args.group}.snapshots",
        home=state,
        chdb_path=os.path.join(state, "chdb"),
        metrics_port=0,
        sql_port=0,
        log_level="warning",
        snapshot_interval=30.0,
    )
    target = args.limit or args.records
    holder: list[Any] = []

    def on_runtime(runtime: Any) -> None:
        runtime.progress.target = target
        holder.append(runtime)

    # stdout is the result channel: keep Faust's output on stderr
    real_stdout = sys.stdout
    sys.stdout = sys.stderr
    try:
        rc = worker.run(s, exit_when_idle=2.0, on_runtime=on_runtime)
    finally:
        sys.stdout = real_stdout
    progress = holder[0].progress
    result: dict[str, Any] = {"contender": "streamproc", "exit_code": rc}
    done = progress.reached
    if progress.first_record_at is None or done is None:
        result.update(records=progress.records_in, complete=False)
    else:
        seconds = done[0] - progress.first_record_at
        cpu = done[1] - progress.first_cpu
        result.update(
            records=progress.records_in,
            complete=progress.records_in >= target,
            seconds=round(seconds, 3),
            events_per_s=round(progress.records_in / seconds, 1),
            cpu_s=round(cpu, 3),
            cpu_us_per_event=round(cpu / progress.records_in * 1e6, 2),
            writes=progress.writes,
        )
    print(__import__("json").dumps(result), flush=True)


if __name__ == "__main__":
    main()
