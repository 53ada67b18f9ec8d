"""paper broker: account, orders and their history, GTTs, holdings, fills

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "paper_account",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("starting_cash", sa.Float(), nullable=False),
        sa.Column("cash", sa.Float(), nullable=False),
        sa.Column("next_order_seq", sa.Integer(), nullable=False),
        sa.Column("next_gtt_seq", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paper_account")),
        sa.UniqueConstraint("name", name=op.f("uq_paper_account_name")),
    )
    op.create_table(
        "paper_gtts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("gtt_id", sa.Integer(), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("exchange", sa.String(length=8), nullable=False),
        sa.Column("product", sa.String(length=8), nullable=False),
        sa.Column("gtt_type", sa.String(length=16), nullable=False),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("triggers", sa.JSON(), nullable=False),
        sa.Column("limit_prices", sa.JSON(), nullable=False),
        sa.Column("last_price", sa.Float(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("triggered_leg", sa.Integer(), nullable=True),
        sa.Column("results", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["paper_account.id"],
            name=op.f("fk_paper_gtts_account_id_paper_account"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paper_gtts")),
        sa.UniqueConstraint("account_id", "gtt_id", name="uq_paper_gtts_account_gtt"),
    )
    with op.batch_alter_table("paper_gtts", schema=None) as batch_op:
        batch_op.create_index("ix_paper_gtts_account_state", ["account_id", "state"], unique=False)

    op.create_table(
        "paper_holdings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("exchange", sa.String(length=8), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("average_price", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["paper_account.id"],
            name=op.f("fk_paper_holdings_account_id_paper_account"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paper_holdings")),
        sa.UniqueConstraint("account_id", "exchange", "symbol", name="uq_paper_holdings_scrip"),
    )
    op.create_table(
        "paper_orders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.String(length=32), nullable=False),
        sa.Column("tag", sa.String(length=20), nullable=True),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("exchange", sa.String(length=8), nullable=False),
        sa.Column("product", sa.String(length=8), nullable=False),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("order_type", sa.String(length=8), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("price", sa.Float(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("filled_quantity", sa.Integer(), nullable=False),
        sa.Column("average_price", sa.Float(), nullable=False),
        sa.Column("status_message", sa.String(length=255), nullable=True),
        sa.Column("gtt_id", sa.Integer(), nullable=True),
        sa.Column("placed_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["paper_account.id"],
            name=op.f("fk_paper_orders_account_id_paper_account"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paper_orders")),
        sa.UniqueConstraint("account_id", "order_id", name="uq_paper_orders_account_order"),
    )
    with op.batch_alter_table("paper_orders", schema=None) as batch_op:
        batch_op.create_index(
            "ix_paper_orders_account_state", ["account_id", "state"], unique=False
        )
        batch_op.create_index("ix_paper_orders_account_tag", ["account_id", "tag"], unique=False)

    op.create_table(
        "paper_fills",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("order_pk", sa.Integer(), nullable=False),
        sa.Column("exchange", sa.String(length=8), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("price", sa.Float(), nullable=False),
        sa.Column("charges", sa.Float(), nullable=False),
        sa.Column("dp_charged", sa.Boolean(), nullable=False),
        sa.Column("realised_pnl", sa.Float(), nullable=False),
        sa.Column("ist_day", sa.Date(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["paper_account.id"],
            name=op.f("fk_paper_fills_account_id_paper_account"),
        ),
        sa.ForeignKeyConstraint(
            ["order_pk"], ["paper_orders.id"], name=op.f("fk_paper_fills_order_pk_paper_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paper_fills")),
    )
    with op.batch_alter_table("paper_fills", schema=None) as batch_op:
        batch_op.create_index("ix_paper_fills_account_day", ["account_id", "ist_day"], unique=False)

    op.create_table(
        "paper_order_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_pk", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("order_type", sa.String(length=8), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("price", sa.Float(), nullable=True),
        sa.Column("filled_quantity", sa.Integer(), nullable=False),
        sa.Column("average_price", sa.Float(), nullable=False),
        sa.Column("status_message", sa.String(length=255), nullable=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_pk"],
            ["paper_orders.id"],
            name=op.f("fk_paper_order_events_order_pk_paper_orders"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paper_order_events")),
    )
    with op.batch_alter_table("paper_order_events", schema=None) as batch_op:
        batch_op.create_index("ix_paper_order_events_order", ["order_pk"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("paper_order_events", schema=None) as batch_op:
        batch_op.drop_index("ix_paper_order_events_order")

    op.drop_table("paper_order_events")
    with op.batch_alter_table("paper_fills", schema=None) as batch_op:
        batch_op.drop_index("ix_paper_fills_account_day")

    op.drop_table("paper_fills")
    with op.batch_alter_table("paper_orders", schema=None) as batch_op:
        batch_op.drop_index("ix_paper_orders_account_tag")
        batch_op.drop_index("ix_paper_orders_account_state")

    op.drop_table("paper_orders")
    op.drop_table("paper_holdings")
    with op.batch_alter_table("paper_gtts", schema=None) as batch_op:
        batch_op.drop_index("ix_paper_gtts_account_state")

    op.drop_table("paper_gtts")
    op.drop_table("paper_account")
