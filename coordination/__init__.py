"""The coordination board and the volunteer's worker. Never imports OCR code."""
