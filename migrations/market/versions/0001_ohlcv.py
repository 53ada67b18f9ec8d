"""ohlcv: one row per candle, keyed by (symbol, timeframe, ts)

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-21 10:00:00

The DDL is written per backend because the two differ on purpose:

- PostgreSQL: `ts` is timestamptz; symbol and timeframe compare bytewise
  (COLLATE "C"), which makes the primary key cheaper to maintain and sorts
  symbols exactly as SQLite does.
- SQLite: `ts` is INTEGER seconds since the Unix epoch, UTC (a candle starts on
  a whole second). Integers compare exactly and fast in the primary key; ISO
  text would depend on its formatting. WITHOUT ROWID stores the rows in primary
  key order, so a symbol's range is read from consecutive pages. The typeof()
  checks stop SQLite's loose typing from storing text or a fractional volume.

On both, a row must be a sane candle: low > 0, low ≤ open, close ≤ high, every
price finite, volume ≥ 0, EMAs finite or NULL. NaN cannot pass: PostgreSQL sorts
NaN above Infinity, and SQLite turns NaN into NULL. (On SQLite the timeframe check
is an OR chain: an IN list in a CHECK costs microseconds per inserted row there.)
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMEFRAMES = ("1m", "3m", "5m", "10m", "15m", "30m", "60m", "1d")
EMAS = ("ema_9", "ema_21", "ema_50", "ema_200")

POSTGRESQL = f"""
CREATE TABLE ohlcv (
    symbol    text COLLATE "C" NOT NULL,
    timeframe text COLLATE "C" NOT NULL,
    ts        timestamptz NOT NULL,
    open      double precision NOT NULL,
    high      double precision NOT NULL,
    low       double precision NOT NULL,
    close     double precision NOT NULL,
    volume    bigint NOT NULL,
    ema_9     double precision,
    ema_21    double precision,
    ema_50    double precision,
    ema_200   double precision,
    CONSTRAINT pk_ohlcv PRIMARY KEY (symbol, timeframe, ts),
    CONSTRAINT ck_ohlcv_symbol CHECK (length(symbol) BETWEEN 1 AND 64),
    CONSTRAINT ck_ohlcv_timeframe CHECK (timeframe IN ({", ".join(map(repr, TIMEFRAMES))})),
    CONSTRAINT ck_ohlcv_prices CHECK (
        low > 0 AND low <= open AND low <= close
        AND high >= open AND high >= close AND high < 'Infinity'
    ),
    CONSTRAINT ck_ohlcv_volume CHECK (volume >= 0),
    CONSTRAINT ck_ohlcv_emas CHECK (
        {" AND ".join(f"({e} IS NULL OR ({e} > '-Infinity' AND {e} < 'Infinity'))" for e in EMAS)}
    )
)
"""

SQLITE = f"""
CREATE TABLE ohlcv (
    symbol    TEXT NOT NULL,
    timeframe TEXT NOT NULL,
    ts        INTEGER NOT NULL,
    open      REAL NOT NULL,
    high      REAL NOT NULL,
    low       REAL NOT NULL,
    close     REAL NOT NULL,
    volume    INTEGER NOT NULL,
    ema_9     REAL,
    ema_21    REAL,
    ema_50    REAL,
    ema_200   REAL,
    CONSTRAINT pk_ohlcv PRIMARY KEY (symbol, timeframe, ts),
    CONSTRAINT ck_ohlcv_types CHECK (
        typeof(symbol) = 'text' AND typeof(timeframe) = 'text' AND typeof(ts) = 'integer'
        AND typeof(open) = 'real' AND typeof(high) = 'real'
        AND typeof(low) = 'real' AND typeof(close) = 'real' AND typeof(volume) = 'integer'
    ),
    CONSTRAINT ck_ohlcv_symbol CHECK (length(symbol) BETWEEN 1 AND 64),
    CONSTRAINT ck_ohlcv_timeframe CHECK ({" OR ".join(f"timeframe = '{tf}'" for tf in TIMEFRAMES)}),
    CONSTRAINT ck_ohlcv_prices CHECK (
        low > 0 AND low <= open AND low <= close
        AND high >= open AND high >= close AND high < 9e999
    ),
    CONSTRAINT ck_ohlcv_volume CHECK (volume >= 0),
    CONSTRAINT ck_ohlcv_emas CHECK (
        {
    " AND ".join(
        f"({e} IS NULL OR (typeof({e}) = 'real' AND {e} > -9e999 AND {e} < 9e999))" for e in EMAS
    )
}
    )
) WITHOUT ROWID
"""


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(POSTGRESQL)
    elif dialect == "sqlite":
        op.execute(SQLITE)
    else:
        raise NotImplementedError(f"the OHLCV store runs on PostgreSQL or SQLite, not {dialect}")


def downgrade() -> None:
    op.execute("DROP TABLE ohlcv")
