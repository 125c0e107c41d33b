"""A pipeline-like set of reads with the official shotgun_api3 client, dumped as JSON.

Run twice by tests/it/pipeline.rs: against sgcache (default selection of config.toml) and
against the (mock) site directly; the test compares the dumps and counts what sgcache answered
locally.

    python pipeline_reads.py BASE_URL SCRIPT_NAME API_KEY OUT.json
"""
import _client


def main():
    sg, out = _client.connect()
    calls = {}
    # Toolkit context: the project, its steps, the user, a task.
    project = sg.find_one("Project", [["name", "is", "Film"]], ["name"])
    calls["project"] = project
    calls["steps"] = sg.find("Step", [], ["code", "entity_type"], order=[{"field_name": "code"}])
    user = sg.find_one("HumanUser", [["login", "is", "user1"]], ["name", "login", "groups", "department"])
    calls["user"] = user
    shot = sg.find_one("Shot", [["code", "is", "sh0010"], ["project", "is", project]], ["code", "sg_sequence"])
    calls["shot"] = shot
    task = sg.find_one("Task", [["entity", "is", shot]], ["content", "entity", "step", "project", "task_assignees"])
    calls["task"] = task
    calls["task_context"] = sg.find_one(
        "Task", [["id", "is", task["id"]]],
        ["content", "entity.Shot.code", "entity.Shot.sg_sequence", "step.Step.code", "project.Project.name"])
    # Tasks of an entity, "my tasks" (direct and through a group), a user's tasks by status.
    calls["tasks_of_shot"] = sg.find("Task", [["entity", "is", shot]], ["content", "step", "sg_status_list", "task_assignees"])
    calls["tasks_of_asset"] = sg.find("Task", [["entity.Asset.code", "is", "asset01"]], ["content", "entity"])
    calls["my_tasks"] = sg.find("Task", [["task_assignees", "is", user]], ["content", "entity", "due_date", "sg_status_list"],
                                order=[{"field_name": "due_date", "direction": "asc"}])
    group = sg.find_one("Group", [["code", "is", "Leads"]], ["code", "users"])
    calls["group"] = group
    calls["group_tasks"] = sg.find("Task", [["task_assignees", "in", [user, group]]], ["content", "task_assignees"])
    calls["my_open_tasks"] = sg.find("Task", [["task_assignees", "is", user], ["sg_status_list", "is_not", "fin"]], ["content"])
    # Versions with user / created_by.
    calls["versions_of_shot"] = sg.find("Version", [["entity", "is", shot]], ["code", "user", "created_by", "sg_task", "sg_status_list"])
    calls["my_versions"] = sg.find("Version", [["user", "is", user]], ["code", "entity", "created_by"])
    calls["latest_versions"] = sg.find("Version", [["project", "is", project]], ["code", "created_at", "user"],
                                       order=[{"field_name": "created_at", "direction": "desc"}, {"field_name": "id", "direction": "desc"}], limit=5)
    # Notes on a shot.
    calls["notes_on_shot"] = sg.find("Note", [["note_links", "in", [shot]]], ["subject", "content", "user", "created_by", "note_links", "addressings_to"])
    # Published files of a task, by type.
    calls["published_files_of_task"] = sg.find("PublishedFile", [["task", "is", task]],
                                               ["code", "name", "version_number", "published_file_type", "entity", "created_by"])
    calls["published_files_by_type"] = sg.find(
        "PublishedFile", [["entity", "is", shot], ["published_file_type.PublishedFileType.code", "is", "Maya Scene"]],
        ["code", "version_number"], order=[{"field_name": "version_number", "direction": "desc"}])
    calls["published_file_types"] = sg.find("PublishedFileType", [], ["code"])
    # Paged full finds (over the 500-entity page size).
    calls["all_shots"] = sg.find("Shot", [["project", "is", project]], ["code", "sg_status_list", "sg_sequence"],
                                 order=[{"field_name": "id", "direction": "asc"}])
    calls["all_tasks"] = sg.find("Task", [["project", "is", project]], ["content", "entity", "step"],
                                 order=[{"field_name": "id", "direction": "asc"}])
    calls["assets"] = sg.find("Asset", [["project", "is", project]], ["code", "sg_asset_type"])
    calls["sequences"] = sg.find("Sequence", [], ["code", "shots"])
    calls["playlists"] = sg.find("Playlist", [["project", "is", project]], ["code", "versions"])
    calls["departments"] = sg.find("Department", [], ["name", "code"])
    calls["users"] = sg.find("HumanUser", [], ["name", "login", "department"])
    calls["schema_read"] = sg.schema_read()
    calls["schema_field_read"] = sg.schema_field_read("Task")
    _client.dump(calls, out)
    print("pipeline_reads: %d calls" % len(calls))


if __name__ == "__main__":
    main()
