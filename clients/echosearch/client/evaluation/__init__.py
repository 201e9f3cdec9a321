"""Task evaluation against labels: metrics (numpy only), label files, the report (matplotlib, extra `eval`)."""
