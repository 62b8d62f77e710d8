"""DUKPT terminals: each terminal may hold TDES and AES base derivation keys (sealed), and the
host keeps the newest KSN it accepted from it so that an older one is refused as a replay.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ("dukpt_bdk_tdes_sealed", sa.LargeBinary),
    ("dukpt_bdk_aes_sealed", sa.LargeBinary),
    ("dukpt_key_id", sa.LargeBinary),
    ("dukpt_counter", sa.BigInteger),
)


def upgrade() -> None:
    for name, column_type in COLUMNS:
        op.add_column("terminals", sa.Column(name, column_type(), nullable=True))


def downgrade() -> None:
    for name, _ in reversed(COLUMNS):
        op.drop_column("terminals", name)
