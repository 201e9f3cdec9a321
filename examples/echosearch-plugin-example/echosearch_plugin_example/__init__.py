"""An example echosearch task plugin: coarse ejection fraction in 5 % steps.

Registered in pyproject.toml as ``example = "echosearch_plugin_example:tasks"``
in the ``echosearch.tasks`` entry-point group. After ``pip install`` the server
lists the task on its next start; nothing else to configure.
"""

from echosearch.tasks import Task, TaskKind

tasks = [
    Task(
        name="example_ef_coarse",
        kind=TaskKind.REGRESSION,
        description="Ejection fraction in 5 % steps from 10 to 80 % (an example plugin task).",
        # "<#>" is replaced by each value: 15 texts to embed instead of the built-in 202.
        prompts=("LV EJECTION FRACTION IS <#>%. ",),
        values={"from": 10, "to": 80, "step": 5},
    ),
]
