from pathlib import Path

DPP_PATH = Path(__file__).resolve().parents[1] / "fixtures" / "dpp.yaml"
