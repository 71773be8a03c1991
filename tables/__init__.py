"""The app's Faust tables: :mod:`.exchange` (books), :mod:`.accounts` (broker accounts), both
declared by :mod:`.store`."""
