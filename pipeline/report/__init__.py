"""What reviewers read: the HTML report (and, later, the workbook)."""
