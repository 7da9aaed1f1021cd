"""Data: the runs table (streamed to the projector), the event log table, their KMS key,
the key that seals a run's `envs` and the key idempotency fingerprints derive from.

Key names come from `workflow_runs.keys`, the same constants the store and its tests use,
so the table and the code that reads it cannot drift apart.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, RemovalPolicy, Stack, Validations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct
from workflow_runs import keys

from infra.checks import skip_checkov
from infra.config import StageConfig

# The actions that write (DynamoDB then needs the table key to encrypt, not only decrypt).
WRITE_ACTIONS = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"})


class Data(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig) -> None:
        super().__init__(scope, construct_id)
        removal = RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY
        self.table_key = self._key("TablesKey", "encrypts the runs and events tables", config, removal)
        # A separate key for the envelope that seals `envs`: the functions that start runs
        # may only encrypt with it, the step runner only decrypt.
        self.envs_key = self._key("EnvsKey", "seals the envs of a run", config, removal)
        # Approval task tokens get a key of their own: the internet-facing API function must
        # open tokens to answer a decision, and must never open a run's envs.
        self.tokens_key = self._key("TokensKey", "seals approval task tokens", config, removal)
        # An HMAC key (never leaves KMS) from which the HTTP functions derive the keys that
        # fingerprint idempotent requests (`envs` are in those requests, so the fingerprint
        # must be keyed) and seal list page tokens (workflow_runs/serverkey.py). KMS does not
        # rotate HMAC keys.
        self.fingerprint_key = kms.Key(
            self,
            "FingerprintKey",
            description=f"workflow-runs {config.name}: keys idempotency fingerprints",
            key_spec=kms.KeySpec.HMAC_256,
            key_usage=kms.KeyUsage.GENERATE_VERIFY_MAC,
            removal_policy=removal,
        )
        skip_checkov(
            self.fingerprint_key,
            "CKV_AWS_7",
            "An HMAC key: KMS supports automatic rotation for symmetric encryption keys only; rotating it "
            "by hand would invalidate every stored idempotency fingerprint and page token.",
        )
        pitr = dynamodb.PointInTimeRecoverySpecification(point_in_time_recovery_enabled=True)
        string = dynamodb.AttributeType.STRING

        self.runs_table = dynamodb.Table(
            self,
            "RunsTable",
            partition_key=dynamodb.Attribute(name=keys.PK, type=string),
            sort_key=dynamodb.Attribute(name=keys.SK, type=string),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=self.table_key,
            # The projector is the stream's one reader; it needs both images to see transitions.
            stream=dynamodb.StreamViewType.NEW_AND_OLD_IMAGES,
            time_to_live_attribute=keys.TTL_ATTRIBUTE,
            point_in_time_recovery_specification=pitr,
            deletion_protection=config.retain_data,
            removal_policy=removal,
        )
        for index in keys.INDEXES:
            self.runs_table.add_global_secondary_index(
                index_name=index.name,
                partition_key=dynamodb.Attribute(name=index.partition, type=string),
                sort_key=dynamodb.Attribute(name=keys.GSK, type=string),
                **(
                    {"projection_type": dynamodb.ProjectionType.INCLUDE, "non_key_attributes": list(index.projection)}
                    if index.projection
                    else {"projection_type": dynamodb.ProjectionType.KEYS_ONLY}
                ),
            )

        # The event log has no stream: the projector writes it, and a stream here would
        # feed the projector its own output.
        self.events_table = dynamodb.Table(
            self,
            "EventsTable",
            partition_key=dynamodb.Attribute(name=keys.PK, type=string),
            sort_key=dynamodb.Attribute(name=keys.SK, type=string),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=self.table_key,
            time_to_live_attribute=keys.TTL_ATTRIBUTE,
            point_in_time_recovery_specification=pitr,
            deletion_protection=config.retain_data,
            removal_policy=removal,
        )

    def _key(self, construct_id: str, purpose: str, config: StageConfig, removal: RemovalPolicy) -> kms.Key:
        """A symmetric key that rotates itself."""
        return kms.Key(self, construct_id, description=f"workflow-runs {config.name}: {purpose}",
                       enable_key_rotation=True, removal_policy=removal)

    def grant(self, table: dynamodb.Table, grantee: iam.IGrantable, *actions: str,
              query_indexes: bool = False) -> None:
        """The DynamoDB `actions` a function's calls need on `table` (and Query on its indexes
        when it lists), and what DynamoDB needs of the table's key for them. The IAM evaluation
        of the recorded calls (tests/infra/test_iam_calls.py) says which: not
        Table.grantReadWriteData, which adds Scan, DescribeTable, BatchWriteItem and the stream
        reads nobody makes, and every action on every index."""
        iam.Grant.add_to_principal(grantee=grantee, actions=[f"dynamodb:{action}" for action in actions],
                                   resource_arns=[table.table_arn])
        if query_indexes:
            iam.Grant.add_to_principal(grantee=grantee, actions=["dynamodb:Query"],
                                       resource_arns=[f"{table.table_arn}/index/*"])
        writes = bool(set(actions) & WRITE_ACTIONS)
        if writes:
            self.table_key.grant_encrypt_decrypt(grantee)
        else:
            self.table_key.grant_decrypt(grantee)
        self._acknowledge(table, grantee, writes=writes, indexes=query_indexes)

    def _acknowledge(self, table: dynamodb.Table, grantee: iam.IGrantable, *, writes: bool,
                     indexes: bool = False) -> None:
        acks = []
        if indexes:
            logical = Stack.of(table).get_logical_id(table.node.default_child)
            acks.append(
                Acknowledgment(
                    id=f"AwsSolutions-IAM5[Resource::<{logical}.Arn>/index/*]",
                    reason="Queries the runs table's own list indexes (keys.INDEXES); "
                    "index/* names only this table's indexes.",
                )
            )
        if writes:
            reason = (
                "kms:GenerateDataKey* and kms:ReEncrypt* on the tables' own customer-managed key only "
                "(Key.grantEncryptDecrypt): DynamoDB needs them to write items under that key."
            )
            acks.append(Acknowledgment(id="AwsSolutions-IAM5[Action::kms:GenerateDataKey*]", reason=reason))
            acks.append(Acknowledgment(id="AwsSolutions-IAM5[Action::kms:ReEncrypt*]", reason=reason))
        if acks:
            Validations.of(grantee.grant_principal).acknowledge(*acks)
