"""W5 placeholder."""
ROWS: list = []
def spreads(summary):
    return []
def measure(systems, args):
    return {}
