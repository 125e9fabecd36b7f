"""initial schema: offer, price_span, scrape_run, alert

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-23
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tracker.db

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('alert',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('dedupe_key', sa.String(length=255), nullable=False),
    sa.Column('route', sa.String(length=64), server_default='default', nullable=False),
    sa.Column('provider', sa.String(length=32), nullable=True),
    sa.Column('gpu', sa.String(length=32), nullable=True),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', tracker.db.UTCDateTime(), nullable=False),
    sa.Column('next_attempt_at', tracker.db.UTCDateTime(), nullable=False),
    sa.Column('sent_at', tracker.db.UTCDateTime(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('dedupe_key')
    )
    with op.batch_alter_table('alert', schema=None) as batch_op:
        batch_op.create_index('ix_alert_state_next', ['state', 'next_attempt_at'], unique=False)

    op.create_table('offer',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('provider', sa.String(length=32), nullable=False),
    sa.Column('region', sa.String(length=64), nullable=False),
    sa.Column('zone', sa.String(length=64), nullable=False),
    sa.Column('instance_type', sa.String(length=128), nullable=False),
    sa.Column('billing', sa.String(length=16), nullable=False),
    sa.Column('gpu', sa.String(length=32), nullable=False),
    sa.Column('gpu_count', sa.Float(), nullable=False),
    sa.Column('vcpu', sa.Float(), nullable=True),
    sa.Column('memory_gb', sa.Float(), nullable=True),
    sa.Column('disk', sa.String(length=200), nullable=True),
    sa.Column('raw_gpu_name', sa.String(length=200), server_default='', nullable=False),
    sa.Column('details', sa.Text(), server_default='{}', nullable=False),
    sa.Column('first_seen', tracker.db.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('provider', 'region', 'zone', 'instance_type', 'billing', name='uq_offer_series')
    )
    with op.batch_alter_table('offer', schema=None) as batch_op:
        batch_op.create_index('ix_offer_provider_gpu', ['provider', 'gpu'], unique=False)

    op.create_table('scrape_run',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('provider', sa.String(length=32), nullable=False),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('started_at', tracker.db.UTCDateTime(), nullable=False),
    sa.Column('finished_at', tracker.db.UTCDateTime(), nullable=True),
    sa.Column('observed_at', tracker.db.UTCDateTime(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('error_kind', sa.String(length=32), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('source', sa.String(length=16), nullable=True),
    sa.Column('offers', sa.Integer(), nullable=False),
    sa.Column('new_spans', sa.Integer(), nullable=False),
    sa.Column('extended_spans', sa.Integer(), nullable=False),
    sa.Column('dropped', sa.Integer(), nullable=False),
    sa.Column('unmapped', sa.Integer(), nullable=False),
    sa.Column('diagnostics', sa.Text(), server_default='{}', nullable=False),
    sa.Column('host', sa.String(length=128), server_default='', nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('scrape_run', schema=None) as batch_op:
        batch_op.create_index('ix_run_provider_started', ['provider', 'started_at'], unique=False)

    op.create_table('price_span',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('offer_id', sa.Integer(), nullable=False),
    sa.Column('first_seen', tracker.db.UTCDateTime(), nullable=False),
    sa.Column('last_seen', tracker.db.UTCDateTime(), nullable=False),
    sa.Column('price', tracker.db.Money(), nullable=True),
    sa.Column('available', sa.Boolean(), nullable=True),
    sa.Column('stock', sa.String(length=64), nullable=True),
    sa.Column('source', sa.String(length=16), server_default='', nullable=False),
    sa.ForeignKeyConstraint(['offer_id'], ['offer.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('offer_id', 'first_seen', name='uq_span_start')
    )
    with op.batch_alter_table('price_span', schema=None) as batch_op:
        batch_op.create_index('ix_span_offer_last', ['offer_id', 'last_seen'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('price_span', schema=None) as batch_op:
        batch_op.drop_index('ix_span_offer_last')

    op.drop_table('price_span')
    with op.batch_alter_table('scrape_run', schema=None) as batch_op:
        batch_op.drop_index('ix_run_provider_started')

    op.drop_table('scrape_run')
    with op.batch_alter_table('offer', schema=None) as batch_op:
        batch_op.drop_index('ix_offer_provider_gpu')

    op.drop_table('offer')
    with op.batch_alter_table('alert', schema=None) as batch_op:
        batch_op.drop_index('ix_alert_state_next')

    op.drop_table('alert')
