"""Read models (CQRS): order, account and position documents in MongoDB folded from the topics."""
