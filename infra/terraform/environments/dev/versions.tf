terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.60"
    }
  }
  # State stays local by default; a team puts it in S3, e.g.:
  # backend "s3" { bucket = "my-terraform-state", key = "atm-simulator/dev.tfstate", region = "eu-west-1" }
}

provider "aws" {
  region = var.aws_region
  default_tags {
    tags = {
      Project     = "atm-simulator"
      Environment = var.environment
      ManagedBy   = "terraform"
    }
  }
}
