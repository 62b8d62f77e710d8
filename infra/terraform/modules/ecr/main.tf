# The image repository: scanned on push, the last 20 images kept.

resource "aws_ecr_repository" "app" {
  #checkov:skip=CKV_AWS_51:deploy.yml moves the latest tag to each new image; the commit-SHA tags never move
  #checkov:skip=CKV_AWS_136:AES256 encryption at rest; a customer-managed KMS key costs more than the dev image is worth
  name                 = var.name_prefix
  image_tag_mutability = "MUTABLE"
  force_delete         = var.force_delete
  image_scanning_configuration {
    scan_on_push = true
  }
  encryption_configuration {
    encryption_type = "AES256"
  }
}

resource "aws_ecr_lifecycle_policy" "keep_recent" {
  repository = aws_ecr_repository.app.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "keep the last 20 images"
      selection    = { tagStatus = "any", countType = "imageCountMoreThan", countNumber = 20 }
      action       = { type = "expire" }
    }]
  })
}
