"""trading: ladders, legs (trades), orders, GTTs and param versions, each with its state

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ladders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("stopped_out", sa.Boolean(), nullable=False),
        sa.Column("opened_at", sa.DateTime(), nullable=False),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ladders")),
    )
    with op.batch_alter_table("ladders", schema=None) as batch_op:
        batch_op.create_index("ix_ladders_account_state", ["account", "state"], unique=False)
        batch_op.create_index("ix_ladders_account_symbol", ["account", "symbol"], unique=False)

    op.create_table(
        "param_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("yaml", sa.Text(), nullable=False),
        sa.Column("diff", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_param_versions")),
        sa.UniqueConstraint("version", name="uq_param_versions_version"),
    )
    op.create_table(
        "trades",
        sa.Column("trade_id", sa.Integer(), nullable=False),
        sa.Column("ladder_id", sa.Integer(), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("position_number", sa.Integer(), nullable=False),
        sa.Column("qty", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("sl_pct", sa.Float(), nullable=False),
        sa.Column("target_pct", sa.Float(), nullable=True),
        sa.Column("entry_price", sa.Float(), nullable=True),
        sa.Column("entry_time", sa.DateTime(), nullable=True),
        sa.Column("stop_loss", sa.Float(), nullable=True),
        sa.Column("high", sa.Float(), nullable=True),
        sa.Column("target", sa.Float(), nullable=True),
        sa.Column("gtt_id", sa.Integer(), nullable=True),
        sa.Column("exit_price", sa.Float(), nullable=True),
        sa.Column("exit_time", sa.DateTime(), nullable=True),
        sa.Column("exit_reason", sa.String(length=16), nullable=True),
        sa.Column("pnl", sa.Float(), nullable=True),
        sa.Column("pnl_pct", sa.Float(), nullable=True),
        sa.Column("charges", sa.Float(), nullable=True),
        sa.Column("pnl_net", sa.Float(), nullable=True),
        sa.Column("entry_tag", sa.String(length=20), nullable=True),
        sa.Column("exit_tag", sa.String(length=20), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["ladder_id"], ["ladders.id"], name=op.f("fk_trades_ladder_id_ladders")
        ),
        sa.PrimaryKeyConstraint("trade_id", name=op.f("pk_trades")),
    )
    with op.batch_alter_table("trades", schema=None) as batch_op:
        batch_op.create_index("ix_trades_entry_time", ["entry_time"], unique=False)
        batch_op.create_index("ix_trades_pnl", ["pnl"], unique=False)
        batch_op.create_index("ix_trades_symbol_status", ["symbol", "status"], unique=False)

    op.create_table(
        "gtts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("trade_id", sa.Integer(), nullable=False),
        sa.Column("broker_gtt_id", sa.Integer(), nullable=True),
        sa.Column("gtt_type", sa.String(length=16), nullable=False),
        sa.Column("triggers", sa.JSON(), nullable=False),
        sa.Column("limit_prices", sa.JSON(), nullable=False),
        sa.Column("pending_triggers", sa.JSON(), nullable=True),
        sa.Column("pending_limit_prices", sa.JSON(), nullable=True),
        sa.Column("qty", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("status_message", sa.String(length=255), nullable=True),
        sa.Column("last_change_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["trade_id"], ["trades.trade_id"], name=op.f("fk_gtts_trade_id_trades")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gtts")),
    )
    with op.batch_alter_table("gtts", schema=None) as batch_op:
        batch_op.create_index("ix_gtts_state", ["state"], unique=False)
        batch_op.create_index("ix_gtts_trade_id", ["trade_id"], unique=False)

    op.create_table(
        "orders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("trade_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=20), nullable=False),
        sa.Column("broker_order_id", sa.String(length=32), nullable=True),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("order_type", sa.String(length=8), nullable=False),
        sa.Column("qty", sa.Integer(), nullable=False),
        sa.Column("price", sa.Float(), nullable=True),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("filled_qty", sa.Integer(), nullable=False),
        sa.Column("average_price", sa.Float(), nullable=True),
        sa.Column("status_message", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["trade_id"], ["trades.trade_id"], name=op.f("fk_orders_trade_id_trades")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint("tag", name="uq_orders_tag"),
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index("ix_orders_state", ["state"], unique=False)
        batch_op.create_index("ix_orders_trade_id", ["trade_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_trade_id")
        batch_op.drop_index("ix_orders_state")

    op.drop_table("orders")
    with op.batch_alter_table("gtts", schema=None) as batch_op:
        batch_op.drop_index("ix_gtts_trade_id")
        batch_op.drop_index("ix_gtts_state")

    op.drop_table("gtts")
    with op.batch_alter_table("trades", schema=None) as batch_op:
        batch_op.drop_index("ix_trades_symbol_status")
        batch_op.drop_index("ix_trades_pnl")
        batch_op.drop_index("ix_trades_entry_time")

    op.drop_table("trades")
    op.drop_table("param_versions")
    with op.batch_alter_table("ladders", schema=None) as batch_op:
        batch_op.drop_index("ix_ladders_account_symbol")
        batch_op.drop_index("ix_ladders_account_state")

    op.drop_table("ladders")
