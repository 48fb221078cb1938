"""Numerical parity with the official JoyVASA / LivePortrait code (``python -m joyvasa_core.parity DIR``)."""
