"""Work guides, questions and answers, and vendor contracts (see issue 7)."""
