"""Code that runs on Lambda at deploy time (shipped in the API bundle, never imports aws_cdk)."""
