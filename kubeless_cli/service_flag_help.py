"""What ``--help`` says of each flag of ``service create`` and ``service update``.

One line per ServiceFlags field (docker's wording, with kubeless's value forms),
and a metavar naming what the value is; an update's ``--*-add`` flags and its
update-only ones have their own line. service_cmds.py builds the options from
ServiceFlags and asks ``flag_help`` for each; tests/unit/test_cli_help.py fails
when a flag of any command has no help.
"""

from __future__ import annotations

# --help of each flag: (metavar, one line), docker's wording; an update's -add flag
# and the update-only ones have their own line in _UPDATE_HELP.
_DURATION_UNITS = "(ns|us|ms|s|m|h)"
_HELP: dict[str, tuple[str, str]] = {
    "name": ("NAME", "Service name (default: a random one)"),
    "image": ("IMAGE", "Service image tag"),
    "replicas": ("N", "Number of tasks"),
    "mode": ("MODE", 'Service mode ("replicated", "global", "replicated-job", "global-job")'),
    "publish": ("PORT", "Publish a port, e.g. 8080:80, 53/udp or "
                        "published=8080,target=80,mode=host"),
    "mount": ("MOUNT", "Attach a filesystem mount, e.g. "
                       "type=bind,source=/srv,target=/data,readonly"),
    "env": ("KEY=VALUE", "Set an environment variable"),
    "labels": ("KEY=VALUE", "Set a service label"),
    "constraint": ("EXPR", "Placement constraint, e.g. node.role==manager"),
    "placement_pref": ("PREF", "Placement preference, e.g. spread=node.labels.zone"),
    "max_concurrent": ("N", "Number of job tasks to run concurrently (default: --replicas)"),
    "schedule": ("CRON", "Run the job on a schedule: 5 cron fields, UTC, e.g. '0 3 * * *'"),
    "run_history_limit": ("N", "Job runs whose tasks are kept (default 3)"),
    "max_replicas_per_node": ("N", "Maximum number of tasks per node (0 = unlimited)"),
    "rebalance": ("", "Move tasks when nodes join or return until the spread is even "
                      "(--no-rebalance: never, the default)"),
    "reserve_cpu": ("CPUS", "Reserve CPUs, e.g. 0.5"),
    "reserve_memory": ("SIZE", "Reserve memory, e.g. 64Mi or 64MB"),
    "limit_cpu": ("CPUS", "Limit CPUs, e.g. 1.5"),
    "limit_memory": ("SIZE", "Limit memory, e.g. 256Mi or 256MB"),
    "restart_condition": ("COND", 'Restart when condition is met ("none", "on-failure", "any")'),
    "restart_delay": ("DURATION", f"Delay between restart attempts {_DURATION_UNITS}"),
    "restart_max_attempts": ("N", "Maximum number of restarts before giving up"),
    "restart_window": ("DURATION", f"Window used to evaluate the restart policy "
                                   f"{_DURATION_UNITS}"),
    "health_cmd": ("CMD", "Command to run to check health (run by a shell)"),
    "health_interval": ("DURATION", f"Time between running the check {_DURATION_UNITS}"),
    "health_timeout": ("DURATION", f"Maximum time to allow one check to run {_DURATION_UNITS}"),
    "health_retries": ("N", "Consecutive failures needed to report unhealthy"),
    "health_start_period": ("DURATION", "Start period for the container to initialize before "
                                        f"counting retries towards unstable {_DURATION_UNITS}"),
    "update_parallelism": ("N", "Maximum number of tasks updated simultaneously "
                                "(0 to update all at once)"),
    "update_delay": ("DURATION", f"Delay between updates {_DURATION_UNITS}"),
    "update_failure_action": ("ACTION", 'Action on update failure ("pause", "continue", '
                                        '"rollback")'),
    "update_monitor": ("DURATION", "Duration after each task update to monitor for failure "
                                   f"{_DURATION_UNITS}"),
    "update_max_failure_ratio": ("RATIO", "Failure rate to tolerate during an update (0 to 1)"),
    "update_order": ("ORDER", 'Update order ("start-first", "stop-first")'),
    "rollback_parallelism": ("N", "Maximum number of tasks rolled back simultaneously "
                                  "(0 to roll back all at once)"),
    "rollback_delay": ("DURATION", f"Delay between task rollbacks {_DURATION_UNITS}"),
    "rollback_failure_action": ("ACTION", 'Action on rollback failure ("pause", "continue")'),
    "rollback_monitor": ("DURATION", "Duration after each task rollback to monitor for failure "
                                     f"{_DURATION_UNITS}"),
    "rollback_max_failure_ratio": ("RATIO", "Failure rate to tolerate during a rollback "
                                            "(0 to 1)"),
    "rollback_order": ("ORDER", 'Rollback order ("start-first", "stop-first")'),
    "stop_grace_period": ("DURATION", "Time to wait before force killing a container "
                                      f"{_DURATION_UNITS}"),
    "workdir": ("DIR", "Working directory inside the container"),
    "entrypoint": ("CMD", "Overwrite the default ENTRYPOINT of the image"),
    "user": ("USER", "Username or UID (format: <name|uid>[:<group|gid>])"),
    "secret": ("SECRET", "Expose a secret to the service: NAME or "
                         "source=NAME,target=PATH[,mode=0400]"),
    "config": ("CONFIG", "Expose a config to the service: NAME or "
                         "source=NAME,target=PATH[,mode=0444]"),
}
_UPDATE_HELP: dict[str, tuple[str, str]] = {
    "env": ("KEY=VALUE", "Add or update an environment variable"),
    "labels": ("KEY=VALUE", "Add or update a service label"),
    "publish": ("PORT", "Add or update a published port (as --publish of create)"),
    "mount": ("MOUNT", "Add or update a mount (as --mount of create)"),
    "constraint": ("EXPR", "Add or update a placement constraint"),
    "placement_pref": ("PREF", "Add a placement preference"),
    "secret": ("SECRET", "Add or update a secret on a service"),
    "config": ("CONFIG", "Add or update a config on a service"),
    "env_rm": ("KEY", "Remove an environment variable"),
    "label_rm": ("KEY", "Remove a label by its key"),
    "publish_rm": ("PORT", "Remove a published port by its target port"),
    "mount_rm": ("PATH", "Remove a mount by its target path"),
    "constraint_rm": ("EXPR", "Remove a constraint"),
    "placement_pref_rm": ("PREF", "Remove a placement preference"),
    "secret_rm": ("NAME", "Remove a secret"),
    "config_rm": ("NAME", "Remove a config"),
    "force": ("", "Force update even if no changes require it (replaces every task)"),
}


def flag_help(field: str, update: bool = False) -> tuple[str, str]:
    """(metavar, one-line help) of a ServiceFlags field's flag; ("VALUE", "") when none
    is written (the test of --help says so)."""
    if update and field in _UPDATE_HELP:
        return _UPDATE_HELP[field]
    return _HELP.get(field, ("VALUE", ""))
