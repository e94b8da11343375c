"""How the report presents a study (no effect on results: may change between attempts)."""

from __future__ import annotations

from pydantic import Field, field_validator

from synthaug.config.base import StrictModel


class ReportConfig(StrictModel):
    metric: str = Field(
        "auto",
        description="primary metric of the report's summary: auto (macro-F1 when the test split is imbalanced, "
        "accuracy otherwise) or a recorded column such as test_balanced_accuracy or test_cross_entropy",
    )

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        if value != "auto" and not value.startswith(("test_", "val_")):
            raise ValueError(f"report.metric must be 'auto' or a test_* / val_* metric column, got {value!r}")
        return value
