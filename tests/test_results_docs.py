from pathlib import Path

import pytest

from suite.results.schema import Accuracy, Provenance, Result, Step, TorchMemory

DOC = (Path(__file__).parents[1] / "docs" / "run.md").read_text()


@pytest.mark.parametrize("model", [Result, Step, Accuracy, TorchMemory, Provenance], ids=lambda m: m.__name__)
def test_every_result_field_is_documented(model):
    missing = [f.alias or n for n, f in model.model_fields.items() if f"`{f.alias or n}`" not in DOC]
    assert not missing, f"docs/run.md does not document {model.__name__} fields {missing}"
