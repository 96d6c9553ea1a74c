"""Cek status: a citizen's status in the last published round (index, CLI, local web page)
and the objections they file, which the next round hands to reviewers."""
