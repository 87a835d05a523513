"""SAM families (SAM, SAM-HQ, SAM 2.1, EdgeTAM, SAM 3): loading and freezing, the decoding core, the
square families' preprocessing."""
