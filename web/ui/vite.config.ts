// Builds the UI into dist/, which promflow embeds (src/api/ui.rs). Asset URLs are
// relative ('./assets/…') so the pages work under any --web.route-prefix.
import { defineConfig } from 'vite';

export default defineConfig({
  base: './',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: false,
    chunkSizeWarningLimit: 2000,
  },
});
