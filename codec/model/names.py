"""Shipped models by bitstream id (torch-free: `bitlens info` names a file's model without loading it)."""
from __future__ import annotations

# bitstream model id -> weights file stem; older models stay so their bitstreams keep decoding
MODELS: dict[int, str] = {1: "bitlens-hp-v1", 2: "bitlens-hp-v2", 3: "bitlens-hp-v3", 4: "bitlens-hp-v4",
                          5: "bitlens-hp-v5", 6: "bitlens-hp-v6", 7: "bitlens-hp-v7",
                          8: "bitlens-hp-v8", 10: "bitlens-hp-v10", 11: "bitlens-hp-v11",
                          12: "bitlens-hp-v12", 13: "bitlens-hp-v13",
                          14: "bitlens-hp-v14", 15: "bitlens-hp-v15", 16: "bitlens-hp-v16",
                          17: "bitlens-hp-v17", 18: "bitlens-hp-v18",
                          19: "bitlens-hp-v19", 20: "bitlens-hp-v20", 21: "bitlens-hp-v21",
                          22: "bitlens-hp-v22"}   # v9: trained, not shipped
DEFAULT_MODEL_ID = 22
