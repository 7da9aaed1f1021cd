"""IAM proven by the calls the code makes: every AWS call each function made in this session's
integration and end-to-end suites (recorded by workflow_runs_dev.aws_calls) is judged against
that function's role policies and the KMS key policies of the synthesized stack, by an
independent evaluator (@cloud-copilot/iam-simulate, tests/infra/iam_simulate.mjs). Any denied
call fails. Runs after every other test (`after_all_suites`): sorted last, and under
pytest-xdist it waits until the other workers' tests have finished too.

`IAM_TEMPLATE=<file>` judges the calls against another synthesized template (docs/reliability.md
shows it failing on the template before this check existed)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import TEST_ACCOUNT, TEST_REGION
from tests.support import wait_for_every_other_test

# The wait for the other workers is bounded by wait_for_every_other_test, not by the test timeout.
pytestmark = [pytest.mark.after_all_suites, pytest.mark.timeout(2400)]

ROOT = Path(__file__).resolve().parents[2]
SIMULATOR = Path(__file__).with_name("iam_simulate.mjs")
FUNCTIONS = ("api", "stream", "step-runner", "projector", "reconciler")
# Granted, yet no recorded call of the function's code uses them: (action, a part of the
# resource) → why each stays. docs/security.md has each function's grants and their calls.
KEPT_WITHOUT_A_CALL = {
    ("logs:CreateLogStream", "log-group"): "Lambda writes the function's logs with its role",
    ("logs:PutLogEvents", "log-group"): "Lambda writes the function's logs with its role",
    ("xray:PutTraceSegments", "*"): "Lambda's active tracing sends the function's segments with its role",
    ("xray:PutTelemetryRecords", "*"): "Lambda's active tracing sends telemetry with its role",
    ("sqs:SendMessage", "Failures"): "Lambda sends a failed record / event to the dead-letter queue with its role",
    ("sqs:SendMessage", "DeadLetters"): "Lambda sends a failed record / event to the dead-letter queue with its role",
    ("sqs:GetQueueAttributes", "Failures"): "the event source mapping checks its on-failure queue with its role",
    ("sqs:GetQueueUrl", "Failures"): "the event source mapping checks its on-failure queue with its role",
    ("kms:Decrypt", "TablesKey"): "DynamoDB uses the tables' key with the caller's permissions",
    ("kms:Encrypt", "TablesKey"): "DynamoDB uses the tables' key with the caller's permissions",
    ("kms:ReEncrypt*", "TablesKey"): "DynamoDB uses the tables' key with the caller's permissions",
    ("kms:GenerateDataKey*", "TablesKey"): "DynamoDB uses the tables' key with the caller's permissions",
    ("kms:DescribeKey", "TablesKey"): "DynamoDB uses the tables' key with the caller's permissions",
    ("bedrock:InvokeModel", "foundation-model"): "an llm step with LLM_PROVIDER=bedrock; the suites run the echo "
    "model (tests/unit/step_runner/test_llm.py drives the Bedrock client with a stub)",
    ("bedrock:InvokeModelWithResponseStream", "foundation-model"): "an llm step with LLM_PROVIDER=bedrock (as above)",
    ("bedrock:InvokeModel", "inference-profile"): "an llm step with LLM_PROVIDER=bedrock (as above)",
    ("bedrock:InvokeModelWithResponseStream", "inference-profile"): "an llm step with LLM_PROVIDER=bedrock "
    "(as above)",
}
# The same, for one function's grant only: (function, action, a part of the resource) → why.
KEPT_FOR = {
    ("reconciler", "dynamodb:PutItem", "RunsTable"): "settling a run whose execution ended without writing its "
    "end (closing its open attempts); the suites' failed runs are settled by their own RecordFailure first, "
    "tests/unit/step_runner/test_reconciler.py reaches it under moto",
    ("reconciler", "dynamodb:UpdateItem", "RunsTable"): "as above: the status change of a settled run",
    ("reconciler", "dynamodb:ConditionCheckItem", "RunsTable"): "as above: the run's status checked in the settling "
    "transaction",
    ("reconciler", "dynamodb:GetItem", "RunsTable"): "as above: a stored approval decision read when settling",
    ("reconciler", "dynamodb:Query", "/index/*"): "the sweep's Query of the Active index (every 5 minutes "
    "in AWS; the local runtime has no sweep), tests/unit/step_runner/test_reconciler.py reaches it",
    ("stream", "kms:GenerateDataKey", "EnvsKey"): "sealing envs at execute/stream: the suites stream runs "
    "without envs (the API's sealing is recorded); an end-to-end execute/stream with envs would reach it",
    ("projector", "dynamodb:PutItem", "RunsTable"): "expiring a run whose head TTL deleted (its marker; "
    "store/retention.py), reached when tests/integration/test_retention.py's records reach the projector",
    ("projector", "dynamodb:UpdateItem", "RunsTable"): "expiring a run: its counters move (as above)",
    ("projector", "dynamodb:DeleteItem", "RunsTable"): "expiring a run: its other items are deleted (as above)",
    ("reconciler", "sqs:ReceiveMessage", "ProjectorFailures"): "Lambda's SQS poller receives the projector's "
    "failed batches for the repair with the function's role (the suites call the handler with the batch)",
    ("reconciler", "sqs:DeleteMessage", "ProjectorFailures"): "the SQS poller deletes a repaired message (as above)",
    ("reconciler", "sqs:ChangeMessageVisibility", "ProjectorFailures"): "the SQS poller returns a message it "
    "could not repair (as above)",
    ("reconciler", "states:DescribeExecution", "execution"): "asks a Standard execution's status; the local "
    "orchestrator hands the reconciler the status itself, tests/unit/step_runner/test_reconciler.py reaches it",
}


# --------------------------------------------------------------------------- the template


class Resolver:
    """CloudFormation intrinsics → concrete values for a placeholder account and region."""

    def __init__(self, template: dict[str, Any]):
        self.resources = template["Resources"]

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self(v) for v in value]
        if not isinstance(value, dict):
            return value
        if "Ref" in value:
            return self.ref(value["Ref"])
        if "Fn::GetAtt" in value:
            logical, attribute = value["Fn::GetAtt"]
            return self.attribute(logical, attribute)
        if "Fn::Join" in value:
            separator, parts = value["Fn::Join"]
            return separator.join(str(self(p)) for p in parts)
        if "Fn::Select" in value:
            index, items = value["Fn::Select"]
            return self(items)[int(index)]
        if "Fn::Split" in value:
            separator, text = value["Fn::Split"]
            return str(self(text)).split(separator)
        return {k: self(v) for k, v in value.items()}

    def ref(self, name: str) -> str:
        pseudo = {"AWS::Region": TEST_REGION, "AWS::AccountId": TEST_ACCOUNT, "AWS::Partition": "aws",
                  "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": "WorkflowRuns-dev"}
        if name in pseudo:
            return pseudo[name]
        kind = self.resources[name]["Type"]
        if kind in ("AWS::StepFunctions::StateMachine", "AWS::SQS::Queue", "AWS::SNS::Topic", "AWS::Lambda::Alias"):
            return self.attribute(name, "Arn")
        return name  # a table's, a role's, a key's physical name: its logical id here

    def attribute(self, logical: str, attribute: str) -> str:
        resource = self.resources[logical]
        kind, properties = resource["Type"], resource.get("Properties", {})
        prefix = f"arn:aws:{{}}:{TEST_REGION}:{TEST_ACCOUNT}:"
        if attribute == "StreamArn":
            return prefix.format("dynamodb") + f"table/{logical}/stream/2026-12-07T00:00:00.000"
        arns = {
            "AWS::DynamoDB::Table": lambda: prefix.format("dynamodb") + f"table/{logical}",
            "AWS::KMS::Key": lambda: prefix.format("kms") + f"key/{logical}",
            "AWS::StepFunctions::StateMachine": lambda: prefix.format("states")
            + f"stateMachine:{properties.get('StateMachineName', logical)}",
            "AWS::IAM::Role": lambda: f"arn:aws:iam::{TEST_ACCOUNT}:role/{logical}",
            "AWS::Lambda::Function": lambda: prefix.format("lambda") + f"function:{logical}",
            "AWS::Lambda::Alias": lambda: prefix.format("lambda") + f"function:{logical}:live",
            "AWS::Logs::LogGroup": lambda: prefix.format("logs") + f"log-group:{logical}:*",
            "AWS::SQS::Queue": lambda: prefix.format("sqs") + logical,
            "AWS::SNS::Topic": lambda: prefix.format("sns") + logical,
        }
        return arns[kind]()


class Deployment:
    """Each function's role policies, environment, and the key policies of the stack."""

    def __init__(self, template: dict[str, Any]):
        resolve = self.resolve = Resolver(template)
        resources = template["Resources"]
        self.functions: dict[str, dict[str, Any]] = {}
        for properties in (r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::Function"):
            variables = properties.get("Environment", {}).get("Variables", {})
            role = properties["Role"]["Fn::GetAtt"][0]
            policies = [resolve(r["Properties"]["PolicyDocument"]) for r in resources.values()
                        if r["Type"] == "AWS::IAM::Policy" and {"Ref": role} in r["Properties"]["Roles"]]
            policies += [resolve(p["PolicyDocument"]) for p in resources[role]["Properties"].get("Policies", [])]
            self.functions[variables["POWERTOOLS_SERVICE_NAME"]] = {
                "role": resolve.attribute(role, "Arn"),
                "policies": policies,
                "environment": {k: resolve(v) for k, v in variables.items()},
                "tables": {k: v["Ref"] for k, v in variables.items() if isinstance(v, dict) and "Ref" in v
                           and resources[v["Ref"]]["Type"] == "AWS::DynamoDB::Table"},
            }
        self.key_policies = {resolve.attribute(k, "Arn"): resolve(r["Properties"]["KeyPolicy"])
                             for k, r in resources.items() if r["Type"] == "AWS::KMS::Key"}

    def concrete(self, function: str, text: str) -> str:
        """A recorded ARN with the deployment's names filled from the function's environment."""
        spec = self.functions[function]

        def fill(match: re.Match[str]) -> str:
            name, _, part = match.group(1).partition(".")
            if name == "AWS::Region":
                return TEST_REGION
            if name == "AWS::AccountId":
                return TEST_ACCOUNT
            if part == "stream":
                return self.resolve.attribute(spec["tables"][name], "StreamArn") if name in spec["tables"] \
                    else f"NOT-IN-ENVIRONMENT:{name}"
            value = spec["environment"].get(name, f"NOT-IN-ENVIRONMENT:{name}")
            return re.split(r"[:/]", value)[-1] if part == "name" else value

        return re.sub(r"\$\{([^}]+)\}", fill, text)


# --------------------------------------------------------------------------- the calls


def recorded_calls(path: str) -> list[dict[str, Any]]:
    lines = Path(path).read_text().splitlines() if Path(path).exists() else []
    unique = {json.dumps(json.loads(line), sort_keys=True) for line in lines if line.strip()}
    return [json.loads(line) for line in sorted(unique)]


def judge(deployment: Deployment, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each call with the evaluator's answer (`result`) and the concrete resource."""
    simulations, judged = [], []
    for call in calls:
        spec = deployment.functions.get(call["function"])
        resource = deployment.concrete(call["function"], call["resource"]) if spec else call["resource"]
        judged.append({**call, "resource": resource})
        simulations.append({
            "identityPolicies": [{"name": f"policy{i}", "policy": p} for i, p in enumerate(spec["policies"])]
            if spec else [],
            "serviceControlPolicies": [],
            "resourceControlPolicies": [],
            **({"resourcePolicy": deployment.key_policies[resource]} if resource in deployment.key_policies else {}),
            "request": {
                "action": call["action"],
                "principal": spec["role"] if spec else f"arn:aws:iam::{TEST_ACCOUNT}:role/unknown",
                "resource": {"accountId": TEST_ACCOUNT, "resource": resource},
                "contextVariables": call["context"],
            },
        })
    answers = subprocess.run(["node", str(SIMULATOR)], input=json.dumps(simulations), capture_output=True,
                             text=True, check=True, cwd=ROOT, timeout=300)
    for call, answer in zip(judged, json.loads(answers.stdout), strict=True):
        call["result"] = answer["result"] if answer["result"] != "error" else f"error: {answer['errors']}"
    return judged


def grants(deployment: Deployment, function: str) -> set[tuple[str, str]]:
    """(action, resource) of every Allow statement of the function's role."""
    granted: set[tuple[str, str]] = set()
    for policy in deployment.functions[function]["policies"]:
        for statement in policy["Statement"]:
            if statement["Effect"] == "Allow":
                actions, resources = statement["Action"], statement["Resource"]
                granted |= {(a, r) for a in ([actions] if isinstance(actions, str) else actions)
                            for r in ([resources] if isinstance(resources, str) else resources)}
    return granted


def _matches(pattern: str, value: str) -> bool:
    return re.fullmatch(re.escape(pattern).replace(r"\*", ".*"), value, re.IGNORECASE) is not None


def calls_using(grant: tuple[str, str], calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    action, resource = grant
    return [c for c in calls if _matches(action, c["action"]) and _matches(resource, c["resource"])]


def kept(function: str, grant: tuple[str, str]) -> str | None:
    for (of, action, part), why in KEPT_FOR.items():
        if of == function and action == grant[0] and part in grant[1]:
            return why
    return next((why for (action, part), why in KEPT_WITHOUT_A_CALL.items()
                 if action == grant[0] and (part in grant[1])), None)


@pytest.fixture(scope="module")
def deployment(dev) -> Deployment:
    override = os.environ.get("IAM_TEMPLATE")
    return Deployment(json.loads(Path(override).read_text()) if override else dev.template)


@pytest.fixture(scope="module")
def judged(deployment: Deployment, aws_call_log: str, request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    wait_for_every_other_test(request.session, aws_call_log)
    calls = recorded_calls(aws_call_log)
    if not calls:
        pytest.skip("no AWS call recorded in this session: run with tests/integration and tests/e2e (make test)")
    return judge(deployment, calls)


def test_every_aws_call_a_function_made_is_allowed_by_the_synthesized_policies(judged):
    denied = [f"{c['function']}: {c['action']} on {c['resource']} {c['context'] or ''} ({c['operation']}) "
              f"→ {c['result']}" for c in judged if c["result"] != "Allowed"]
    assert not denied, "AWS would refuse these calls:\n" + "\n".join(sorted(set(denied)))


def test_every_granted_action_is_used_by_a_recorded_call_or_says_why_it_stays(
        deployment, judged, request: pytest.FixtureRequest):
    ran = {Path(str(item.path)) for item in request.session.items}
    suites = {path for folder in ("integration", "e2e") for path in (ROOT / "tests" / folder).glob("test_*.py")}
    if not suites <= ran:
        pytest.skip("not every integration and end-to-end test file ran in this session (make test runs them all)")
    report: dict[str, list[str]] = {}
    unexplained = []
    for function in FUNCTIONS:
        calls = [c for c in judged if c["function"] == function]
        assert calls, f"no call of the {function} function was recorded"
        report[function] = []
        for grant in sorted(grants(deployment, function)):
            using = sorted({c["operation"] for c in calls_using(grant, calls)})
            why = kept(function, grant)
            report[function].append(f"{grant[0]} on {grant[1]}: {', '.join(using) or f'(no call) {why}'}")
            if not using and why is None:
                unexplained.append(f"{function}: {grant[0]} on {grant[1]}")
    print(json.dumps(report, indent=1))  # the tables of docs/security.md
    assert not unexplained, "granted, used by no recorded call, no reason to stay:\n" + "\n".join(unexplained)
