"""checkov skips, carried in the template next to the resource they concern.

checkov reads `Metadata.checkov.skip` of each CloudFormation resource: a list of
`{"id": "CKV_AWS_…", "comment": "<why>"}`. `skip_checkov` adds to that list (several
concerns may skip different checks on one resource), so every skip is written beside the
construct that causes it and carries its reason; there is no global skip list.
"""

from __future__ import annotations

from aws_cdk import CfnResource
from constructs import Construct

METADATA_KEY = "checkov"


def skip_checkov(construct: Construct, check_id: str, comment: str) -> None:
    """Skip `check_id` on the CloudFormation resource of `construct` (or on `construct`
    itself when it is one), with `comment` saying why."""
    resource = construct if isinstance(construct, CfnResource) else construct.node.default_child
    if not isinstance(resource, CfnResource):
        raise TypeError(f"{construct.node.path} has no CloudFormation resource to carry a checkov skip")
    if not check_id.startswith("CKV_") or len(comment) < 30:
        raise ValueError(f"a checkov skip names its check and a real reason: {check_id!r}, {comment!r}")
    current = resource.get_metadata(METADATA_KEY) or {}
    skips = [s for s in current.get("skip", []) if s["id"] != check_id]
    resource.add_metadata(METADATA_KEY, {**current, "skip": [*skips, {"id": check_id, "comment": comment}]})
