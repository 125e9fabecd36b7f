"""indexes for the hot paths: spans by last_seen, good runs by observation time

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

Every run asks "which spans did the previous good run see?" (last_seen = that run's time) and
"when was the previous good run?"; metrics and week-over-week ask for the spans alive at a time.
Without these indexes each of those questions scanned every span or every run ever stored, which
is what made an unchanged run of 3,000 offers cost hundreds of milliseconds after a year.
"""
from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("price_span", schema=None) as batch_op:
        batch_op.drop_index("ix_span_offer_last")
        batch_op.create_index("ix_span_last_seen", ["last_seen"], unique=False)
    with op.batch_alter_table("scrape_run", schema=None) as batch_op:
        batch_op.create_index("ix_run_provider_status_observed", ["provider", "status", "observed_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("scrape_run", schema=None) as batch_op:
        batch_op.drop_index("ix_run_provider_status_observed")
    with op.batch_alter_table("price_span", schema=None) as batch_op:
        batch_op.drop_index("ix_span_last_seen")
        batch_op.create_index("ix_span_offer_last", ["offer_id", "last_seen"], unique=False)
