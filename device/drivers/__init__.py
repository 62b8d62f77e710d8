"""Device drivers: speak each peripheral's byte protocol over any pyserial URL."""
