"""The broker's pure rules: instruments in use, holds, fees, settlement dates, positions, and an
account's state machine. No I/O: the accounts agent and the API call it."""
