"""Schedules remember when their rule last changed: interval runs count from then.

Until now an interval schedule counted its runs from ``updated_at``, so renaming or
pausing it shifted its fire times.  Existing rows keep the fire times they had
(``rule_changed_at`` starts as their ``updated_at``).

Revision ID: 0003_schedule_rule
Revises: 0002_business
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003_schedule_rule'
down_revision = '0002_business'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('schedules', sa.Column('rule_changed_at', sa.Float(), nullable=True))
    op.execute("UPDATE schedules SET rule_changed_at = updated_at")
    with op.batch_alter_table('schedules') as batch:
        batch.alter_column('rule_changed_at', existing_type=sa.Float(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('schedules') as batch:
        batch.drop_column('rule_changed_at')
