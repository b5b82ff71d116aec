"""Reading inputs (and writing outputs) in the formats both sides understand."""
