"""SAM families (SAM, SAM-HQ, SAM 2.1): loading and freezing, the decoding core, SAM 2.1 preprocessing."""
