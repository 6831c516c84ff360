"""Feedback reports: every IPS programme's and every day-care provider's report, made from the serving file."""
