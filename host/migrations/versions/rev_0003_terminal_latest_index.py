"""An index on host transactions by terminal and id, so that the sign-on answer finds the
newest STAN the host recorded from a terminal without scanning its whole history.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_host_transactions_terminal_id_id"


def upgrade() -> None:
    op.create_index(INDEX, "host_transactions", ["terminal_id", "id"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="host_transactions")
