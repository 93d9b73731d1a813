"""Checks a release's SBOM and provenance with the reference libraries (test/release/ensure-validators.sh).

  python validate.py SBOM.cdx.json PROVENANCE.intoto.json

The SBOM against CycloneDX 1.6's JSON schema (cyclonedx-python-lib's strict validator); the
provenance as an in-toto Statement v1 whose predicate is SLSA Provenance v1, parsed into the
attestation framework's protobuf messages, which refuse unknown and mistyped fields. Prints
"ok" and exits 0, or prints what is wrong and exits 1.
"""

import json
import sys

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor
from in_toto_attestation.v1.statement import Statement


def main(sbom_path: str, provenance_path: str) -> int:
    with open(sbom_path, encoding="utf-8") as f:
        errors = JsonStrictValidator(SchemaVersion.V1_6).validate_str(f.read())
    if errors is not None:
        print(f"{sbom_path}: not CycloneDX 1.6: {errors}")
        return 1
    with open(provenance_path, encoding="utf-8") as f:
        doc = json.load(f)
    try:
        statement = json_format.ParseDict(doc, statement_pb2.Statement())
        Statement.copy_from_pb(statement).validate()
        if statement.predicate_type != "https://slsa.dev/provenance/v1":
            raise ValueError(f"predicateType {statement.predicate_type!r}, expected SLSA Provenance v1")
        provenance = json_format.ParseDict(doc["predicate"], provenance_pb2.Provenance())
        for dependency in provenance.build_definition.resolved_dependencies:
            ResourceDescriptor.copy_from_pb(dependency).validate()
        if not provenance.build_definition.build_type or not provenance.run_details.builder.id:
            raise ValueError("buildType and builder.id are required")
    except (json_format.ParseError, ValueError, KeyError) as err:
        print(f"{provenance_path}: not an in-toto Statement with SLSA Provenance v1: {err}")
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
