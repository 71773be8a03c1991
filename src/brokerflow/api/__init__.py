"""The order API (FastAPI): users, auth, funding, orders, account and portfolio reads."""
