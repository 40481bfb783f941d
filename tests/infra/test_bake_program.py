"""The bake step inside the real Pulumi program (under mocks): what gets built, uploaded and run."""

from __future__ import annotations

import base64
import copy
from pathlib import Path

import pulumi
import pytest
from click.testing import CliRunner

from infra.commands.cli import main
from infra.preview.program import ProgramRun, run_program
from models.checks import PackagingError
from tests.bake_support import kiln_runtime, save_pyfunc  # noqa: F401 (fixture)
from tests.conftest import stack_config, write_stack

IMAGE_BUILD = "pulumi-python:dynamic/kiln:ImageBuild"
MODEL_ARTIFACT = "pulumi-python:dynamic/kiln:ModelArtifact"


@pytest.fixture
def staging(example_store, kiln_runtime) -> ProgramRun:  # noqa: F811
    config = {**stack_config("staging", example_store), "kiln:build": {"timeoutMinutes": 45}}
    return run_program("staging", config, preview=False)


def test_two_model_versions_with_one_environment_build_one_image_and_upload_two_artifacts(staging: ProgramRun) -> None:
    builds = staging.of_type(IMAGE_BUILD)
    uploads = staging.of_type(MODEL_ARTIFACT)

    assert len(builds) == 1
    assert len({u.inputs["digest"] for u in uploads}) == 2


def test_instances_run_the_digest_pinned_image_the_build_returned(staging: ProgramRun) -> None:
    image_uri = staging.of_type(IMAGE_BUILD)[0].outputs["imageUri"]
    templates = staging.of_type("aws:ec2/launchTemplate:LaunchTemplate")

    assert "@sha256:" in image_uri
    for template in templates:
        assert f'"{image_uri}"' in base64.b64decode(template.inputs["userData"]).decode()


def test_the_autoscaling_group_waits_for_its_model_upload(staging: ProgramRun) -> None:
    uploads = {u.urn: u.inputs["digest"] for u in staging.of_type(MODEL_ARTIFACT)}

    for group in staging.of_type("aws:autoscaling/group:Group"):
        assert len(set(group.dependencies) & set(uploads)) == 1


def test_the_build_project_is_privileged_sized_by_the_estimate_and_bounded_by_the_config(staging: ProgramRun) -> None:
    project = staging.of_type("aws:codebuild/project:Project")[0]
    build = staging.of_type(IMAGE_BUILD)[0]

    assert project.inputs["buildTimeout"] == 45 and build.inputs["timeoutSeconds"] == 45 * 60
    assert project.inputs["environment"]["privilegedMode"] is True
    assert project.inputs["environment"]["computeType"] == "BUILD_GENERAL1_MEDIUM"


def test_the_build_context_is_uploaded_under_the_image_tag(staging: ProgramRun) -> None:
    build = staging.of_type(IMAGE_BUILD)[0]
    context = next(r for r in staging.of_type("aws:s3/bucketObjectv2:BucketObjectv2") if r.name.endswith("-context"))

    assert context.inputs["key"] == build.inputs["contextKey"] == f"build-contexts/{build.inputs['imageTag']}.zip"


def _prod_with_unsigned_model(example_store, tmp_path: Path) -> dict:
    model = save_pyfunc(tmp_path / "unsigned", signature=False, input_example=False)
    config = copy.deepcopy(stack_config("prod", example_store))
    config["kiln:endpoints"][0]["servedModels"][0]["modelUri"] = str(model)
    return config


def test_an_error_finding_stops_the_program_naming_model_check_and_fix(example_store, tmp_path: Path, kiln_runtime) -> None:  # noqa: F811
    config = _prod_with_unsigned_model(example_store, tmp_path)

    with pytest.raises(PackagingError) as raised:
        run_program("prod", config, preview=True)

    served = config["kiln:endpoints"][0]
    assert f"{served['name']}.{served['servedModels'][0]['name']}" in str(raised.value)
    assert "[model-signature]" in str(raised.value)
    assert isinstance(raised.value, pulumi.RunError)  # the engine prints the message, no traceback


def test_kiln_plan_exits_2_on_a_packaging_error(example_store, tmp_path: Path, kiln_runtime) -> None:  # noqa: F811
    stack_file = write_stack(tmp_path, _prod_with_unsigned_model(example_store, tmp_path))

    result = CliRunner().invoke(main, ["plan", str(stack_file)])

    assert result.exit_code == 2
    assert "model-signature" in result.output
