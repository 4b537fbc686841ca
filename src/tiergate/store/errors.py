"""What the store refuses, as kinds of `tiergate.errors.APIError`, so HTTP and CLI render them alike.

ProjectNotFound        404  no project by that name
KeyNotFound            404  no API key by that id
ProjectAlreadyExists   400  a project by that name exists in the organization
InvalidName            400  blank or overlong project or key name
InvalidLimit           400  unknown tier, negative unit, nothing to set
LimitAboveOrgLimit     400  a project limit over its organization's, or an org limit under a project's
"""

from __future__ import annotations

from tiergate.errors import InvalidRequest, NotFound


class ProjectNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"Project `{name}` does not exist.", param="project")


class KeyNotFound(NotFound):
    def __init__(self, key_id: str) -> None:
        super().__init__(f"API key `{key_id}` does not exist.", param="key_id")


class ProjectAlreadyExists(InvalidRequest):
    code = "project_exists"

    def __init__(self, name: str) -> None:
        super().__init__(f"Project `{name}` already exists.", param="name")


class InvalidName(InvalidRequest):
    code = "invalid_value"


class InvalidLimit(InvalidRequest):
    code = "invalid_value"


class LimitAboveOrgLimit(InvalidRequest):
    code = "invalid_value"
