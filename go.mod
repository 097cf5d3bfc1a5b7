module github.com/artificialstudio/webhook-dispatcher

go 1.26.8
