"""Drive the official shotgun_api3 client against one base URL and dump every answer as JSON.

Run twice by tests/it/python_client.rs: once against sgcache, once against the (mock) site
directly; the test then compares the two dumps and checks which calls reached the site.

    python client_compat.py BASE_URL SCRIPT_NAME API_KEY OUT.json
"""
import shotgun_api3

import _client


def main():
    sg, out = _client.connect()
    fields = ["code", "sg_status_list", "sg_sequence", "project", "assets", "sg_cut_in", "updated_at",
              "sg_sequence.Sequence.code"]
    calls = {}
    # find_one by id, a page with links, filters with deep paths and multi-entity conditions.
    calls["find_one_by_id"] = sg.find_one("Shot", [["id", "is", 3]], fields)
    calls["find_one_missing"] = sg.find_one("Shot", [["id", "is", 999999]], fields)
    calls["find_all_paged"] = sg.find("Shot", [], ["code", "sg_cut_in"], order=[{"field_name": "id", "direction": "asc"}])
    calls["find_limit"] = sg.find("Shot", [["sg_status_list", "is", "ip"]], fields, limit=7)
    calls["find_page_3"] = sg.find("Shot", [], ["code"], limit=10, page=3)
    calls["find_sorted_desc"] = sg.find("Shot", [["sg_cut_in", "greater_than", 100]], ["code", "sg_cut_in"],
                                        order=[{"field_name": "sg_cut_in", "direction": "desc"}], limit=25)
    calls["find_deep"] = sg.find("Shot", [["sg_sequence.Sequence.code", "is", "sq02"]], fields)
    calls["find_or"] = sg.find("Shot", [["code", "starts_with", "SH00"], ["sg_cut_in", "less_than", 30]], ["code"],
                               filter_operator="any")
    calls["find_multi_entity"] = sg.find("Shot", [["assets", "is", {"type": "Asset", "id": 2}]], ["code", "assets"])
    calls["find_case_insensitive"] = sg.find("Shot", [["code", "contains", "sh01"]], ["code"])
    calls["find_null"] = sg.find("Shot", [["sg_sequence", "is", None]], ["code"])
    calls["find_retired"] = sg.find("Shot", [], ["code"], retired_only=True)
    calls["find_tasks"] = sg.find("Task", [["entity", "type_is", "Shot"]], ["content", "entity", "task_assignees"])
    # Schema calls without a project: answered by sgcache from the site's stored replies.
    calls["schema_read"] = sg.schema_read()
    calls["schema_entity_read"] = sg.schema_entity_read()
    calls["schema_field_read_type"] = sg.schema_field_read("Shot")
    calls["schema_field_read"] = sg.schema_field_read("Shot", "code")
    # Pass-through: schema calls with a project and uncached types go to the site.
    project = sg.find_one("Project", [], ["name"])
    calls["schema_field_read_project"] = sg.schema_field_read("Shot", "code", project_entity=project)
    # summarize is always passed through; whatever the site answers (the mock site has no
    # summarize and answers a Fault) must reach the client unchanged.
    try:
        calls["summarize"] = sg.summarize("Shot", [], [{"field": "id", "type": "count"}])
    except shotgun_api3.Fault as e:
        calls["summarize"] = "Fault: %s" % e
    calls["uncached_type"] = sg.find("Version", [], ["code"])
    _client.dump(calls, out)
    print("client_compat: %d calls, %d shots paged" % (len(calls), len(calls["find_all_paged"])))


if __name__ == "__main__":
    main()
