import { LabIcon } from '@jupyterlab/ui-components';

// A flask: drawn here, nothing fetched. jp-icon3 follows the theme's icon color.
const svgstr = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M9 2h6v2h-1v5.2l5.6 9.3c.8 1.3-.2 3-1.7 3H6.1c-1.5 0-2.5-1.7-1.7-3L10 9.2V4H9V2zm3 8.4L8.3 16h7.4L12 10.4z"/>
  </g>
</svg>`;

export const labkitIcon = new LabIcon({ name: 'labkit:flask', svgstr });
