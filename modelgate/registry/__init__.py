"""The internal model registry on S3: signed publish of approved models, verified pull for consumers.

Consumers need only this package (boto3 + cryptography)::

    from modelgate.registry import pull
    model = pull("digits-cnn", ":prod", "models/digits-cnn")

The layout, the trust model and the commands are described in docs/registry.md.
"""

from modelgate.registry.aliases import resolve, set_alias
from modelgate.registry.attestation import PREDICATE_TYPE, DecisionSummary, IntakePredicate
from modelgate.registry.config import DEFAULT_BUCKET, RegistryConfig
from modelgate.registry.consumer_state import ConsumerState, trusted_index
from modelgate.registry.errors import (
    IndexRefused,
    NotFound,
    PublishRefused,
    PullRefused,
    RegistryError,
    RegistryUnavailable,
    VersionExists,
)
from modelgate.registry.index import AliasEntry, RegistryIndex, Revocation, VersionEntry, list_names, read_index
from modelgate.registry.index_writer import IndexSigning, sign_index
from modelgate.registry.layout import ModelRef, parse_ref
from modelgate.registry.publish import PublishResult, publish
from modelgate.registry.pull import PulledModel, Resolved, pull, resolve_verified
from modelgate.registry.regate import RegateEntry, RegateReport, regate_registry
from modelgate.registry.revocation import revocation_of, revoke
from modelgate.registry.signer import FileSigner, Signer, ensure_key_pair, load_public_key, org_public_key
from modelgate.registry.verify import VerifiedVersion, verify_version

__all__ = [
    "DEFAULT_BUCKET",
    "PREDICATE_TYPE",
    "AliasEntry",
    "ConsumerState",
    "DecisionSummary",
    "FileSigner",
    "IndexRefused",
    "IndexSigning",
    "IntakePredicate",
    "ModelRef",
    "NotFound",
    "PublishRefused",
    "PublishResult",
    "PullRefused",
    "PulledModel",
    "RegateEntry",
    "RegateReport",
    "RegistryConfig",
    "RegistryError",
    "RegistryIndex",
    "RegistryUnavailable",
    "Resolved",
    "Revocation",
    "Signer",
    "VerifiedVersion",
    "VersionEntry",
    "VersionExists",
    "ensure_key_pair",
    "list_names",
    "load_public_key",
    "org_public_key",
    "parse_ref",
    "publish",
    "pull",
    "read_index",
    "regate_registry",
    "resolve",
    "resolve_verified",
    "revocation_of",
    "revoke",
    "set_alias",
    "sign_index",
    "trusted_index",
    "verify_version",
]
