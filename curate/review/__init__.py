"""`curate review`: a local web app over a run, and the decisions that feed back into it."""
