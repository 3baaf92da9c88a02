"""Tests of `studies/`: the studies' summaries over fabricated run folders."""
